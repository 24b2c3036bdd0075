"""`jointspace demo` end to end, as a user runs it (on a free port and for two epochs, so that it
takes a test's time): it trains, builds, serves and prints example queries whose answers must
be right, not merely printed. Each check below is one a guess would fail."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest

from serving import jointspace_exe

HIT = re.compile(r"^\s+\d+\.\s+(?P<score>-?\d+\.\d+)\s+(?P<modality>\w+)\s+(?P<key>\S+)\s+(?P<label>.*?)"
                 r"(?:\s{2}(?P<extra>\w+=\S+))?$")


@dataclass
class Shown:
    modality: str
    key: str
    label: str
    extra: str | None


def _sections(stdout: str) -> dict[str, list[Shown]]:
    """Each printed example: its title line, then its hits."""
    sections = {}
    for block in stdout.strip().split("\n\n"):
        title, *lines = block.splitlines()
        sections[title] = [Shown(**{k: v for k, v in HIT.match(line).groupdict().items() if k != "score"})
                           for line in lines]
    return sections


def _titled(sections: dict[str, list[Shown]], start: str) -> tuple[str, list[Shown]]:
    [title] = [t for t in sections if t.startswith(start)]
    return title, sections[title]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    out = tmp_path_factory.mktemp("demo")
    return subprocess.run([jointspace_exe(), "demo", "--port", "0", "--epochs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_demo_serves_on_a_free_port_and_prints_every_example(demo):
    assert demo.returncode == 0, demo.stderr[-3000:]
    [port] = re.findall(r"serving on 127\.0\.0\.1:(\d+)", demo.stderr)
    assert int(port) > 0
    sections = _sections(demo.stdout)
    assert len(sections) == 5 + 1  # five examples, then the index line
    index_line = _titled(sections, "index: ")[0]
    info = json.loads(index_line.removeprefix("index: "))
    assert info["size_by_modality"] == {"audio": 120, "text": 10, "id": 1000}  # theo's clips, the words, the films
    assert info["size"] == 1130 and info["dim"] == 32


@pytest.mark.slow
def test_demo_finds_the_spoken_word_across_text_and_audio(demo):
    sections = _sections(demo.stdout)
    _, clips = _titled(sections, 'text "seven" → audio')
    assert len(clips) == 5 and {(c.modality, c.extra) for c in clips} == {("audio", "speaker=theo")}
    assert sum(c.label == "seven" for c in clips) >= 3, clips  # a guess: 12 sevens in 120 clips
    _, words = _titled(sections, "audio 3_theo_0.wav (a spoken three) → text")
    assert [w.modality for w in words] == ["text"] * 3
    assert words[0].key == "word:three", words  # a guess: one in ten
    _, others = _titled(sections, "audio 3_theo_0.wav → other clips")
    assert len(others) == 3 and "clip:3_theo_0" not in {c.key for c in others}  # the query itself is excluded
    assert sum(c.label == "three" for c in others) >= 2, others  # a guess: 11 threes in 119 clips


@pytest.mark.slow
def test_demo_recommends_films_of_the_users_tastes(demo):
    sections = _sections(demo.stdout)
    title, recommended = _titled(sections, "watch history of u:0 ")
    tastes = {f"taste={t}" for t in json.loads(re.search(r"hidden tastes (\[[\d, ]*\])", title).group(1))}
    film = re.search(r"m:\d+", _titled(sections, "film m:")[0]).group(0)
    _, similar = _titled(sections, f"film {film} ")
    # The film is the user's last watch, so of one of those tastes; a guess: one taste in twenty.
    for hits in (recommended, similar):
        assert len(hits) == 5 and {h.modality for h in hits} == {"id"}
        assert sum(h.extra in tastes for h in hits) >= 3, (tastes, hits)
    assert film not in {h.key for h in similar}
