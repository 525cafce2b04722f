"""The pipeline: pure decisions (``decisions``, ``backoff``, ``breaker``) and the workers that
apply them (``turns``, ``deliveries``), wired together by ``bridge.Bridge``."""
