"""The encoder of each modality (ids, text, audio), each implementing `encoders.base`; audio
also has its decoding, log-mel front end and decode worker pool here."""
