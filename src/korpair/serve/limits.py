"""What a server accepts (``ServeLimits``), and the error a body over its size limit raises.

Example::

    limits = ServeLimits(max_text_chars=500, max_pairs=16, batching=False)
    app = create_app(predictor, limits)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException

from korpair.errors import ConfigError


class ServeLimits(BaseModel):
    """What one server accepts, and how it batches. Each field is a ``korpair serve`` flag of the same name.

    >>> ServeLimits(max_text_chars=500, batching=False).max_pairs
    64
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_text_chars: int = Field(1000, ge=1, description="characters (Unicode code points) per premise or hypothesis")
    max_pairs: int = Field(64, ge=1, description="pairs per request")
    max_body_bytes: int = Field(1 << 20, ge=256, description="request body size in bytes; larger ones get 413")
    max_batch_size: int = Field(32, ge=1, description="pairs per model call, gathered from concurrent requests")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="how long a free model waits for requests to join")
    max_batch_tokens: int | None = Field(2048, ge=1, description="padded tokens per model call (pairs x the "
                                         "longest pair's tokens): a merged batch runs longest first in calls of at "
                                         "most this size, so short pairs are not padded to a long one's length")
    batching: bool = Field(True, description="merge concurrent requests; off: each request predicts alone")
    max_queue_pairs: int = Field(1024, ge=1, description="pairs waiting for the model; a request that would pass "
                                 "it gets 503 with Retry-After (one arriving at an empty queue is always taken)")
    request_timeout_s: float = Field(30.0, gt=0, le=3600, description="seconds from a request's headers to its "
                                     "answer; past it: 408 if the body has not arrived, else 503 with Retry-After")
    header_timeout_s: float = Field(10.0, gt=0, le=3600, description="seconds a connection may take to send a "
                                    "request's headers (after connecting or after the previous answer); then closed")
    keep_alive_s: float = Field(5.0, gt=0, le=3600, description="seconds an idle keep-alive connection stays open")
    max_connections: int = Field(1000, ge=1, description="open connections; past it the longest idle one is closed "
                                 "(if none is idle, the new one gets 503)")
    allowed_hosts: tuple[str, ...] = Field((), description="Host names served besides localhost, 127.0.0.1 and "
                                           "[::1], e.g. a reverse proxy's; '*.example.org' matches subdomains, '*' "
                                           "any. Checked on connections to a loopback address, on all once set")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        # "a.example,b.example" and ["a.example", "b.example"] alike (a shell option may be given either way).
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [name for names in value for name in names.split(",")]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.strip().lower() for name in names if name.strip())
        bad = [n for n in names if n != "*" and ("*" in n[1:] or (n.startswith("*") and not n.startswith("*.")))]
        if bad:
            raise ValueError(f"{bad[0]!r}: a wildcard is '*' alone or '*.' before a domain, e.g. '*.example.org'")
        return names

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "serve limits") -> ServeLimits:
        """Validate user options; a bad one raises ``ConfigError`` naming it and what is allowed.

        Example::

            ServeLimits.from_dict({"max_pairs": 0})  # Traceback (most recent call last):
            # korpair.errors.ConfigError: serve limits: max_pairs: Input should be greater than or equal to 1 (got 0)
        """
        try:
            return cls(**values)
        except ValidationError as err:
            problems = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']} (got {e.get('input')!r})"
                        for e in err.errors()]
            raise ConfigError(f"{source}: " + "; ".join(problems)) from None


# The rest of a refused body is never read: close the connection rather than let the client keep sending
# (the server would otherwise read and discard up to the declared length before the next request).
CLOSE = {"connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; the app's handler answers 413."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"request body over {max_body_bytes} bytes", headers=dict(CLOSE))
