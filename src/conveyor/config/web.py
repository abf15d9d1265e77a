"""The dashboard's settings (`web:`): who may read it without signing in, and a reverse proxy's user header."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from conveyor.config.base import Strict


class WebSettings(Strict):
    """`conveyor serve`: sign-in with users of the state store, or a trusted header from a reverse proxy."""

    public: bool = Field(default=False, description="anyone may read the pages without signing in (approving "
                         "still needs a user)")
    deploys: bool = Field(default=False, description="a Deploy button on each release's page for signed-in users: "
                          "it runs `conveyor deploy ENV --release ID --yes` as that user, behind the same gates")
    trusted_header: str | None = Field(default=None, description="a header naming the signed-in user, set by a "
                                       "reverse proxy doing SSO, like X-Forwarded-User; believed only from "
                                       "trusted_proxies")
    trusted_proxies: list[str] = Field(default_factory=list, description="addresses or networks (CIDR) of the "
                                       "proxies whose trusted_header is believed, like 127.0.0.1 or 10.0.0.0/24")

    @field_validator("trusted_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and (not value or not all(c.isalnum() or c == "-" for c in value)):
            raise ValueError(f"expected a header name of letters, digits and '-', like X-Forwarded-User, got {value!r}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"expected an address or network like 10.0.0.0/24, got {entry!r}") from exc
        return value

    def trusts(self, address: str | None) -> bool:
        """Whether a request from `address` may name its user in `trusted_header`."""
        return self.trusted_header is not None and self.is_proxy(address)

    def is_proxy(self, address: str | None) -> bool:
        """Whether `address` is one of `trusted_proxies`."""
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)
