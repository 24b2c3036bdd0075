"""The serving side (`jointspace.server`): index generations, the catalog store, index builders
and the gRPC service."""
