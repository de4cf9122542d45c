"""Several hosts on one machine: network namespaces joined to this one by veth pairs.

A `Network` gives the services an address of their own (on this namespace's loopback
interface, so processes here reach it whatever happens to the links) and each `Host` a
namespace that reaches that address over a veth pair only. `Host.cut()` takes the link down:
nothing passes either way and nobody is told (no reset, no ICMP), as when a cable or a switch
fails; `Host.heal()` brings it back. Needs root and `ip` (Debian's iproute2).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def require_netns() -> None:
    """Fail, saying what is missing, where namespaces cannot be made."""
    if shutil.which("ip") is None:
        raise RuntimeError("the partition tests need `ip`: apt-get install -y iproute2")
    if os.geteuid() != 0:
        raise RuntimeError("the partition tests make network namespaces: run them as root")


@dataclass
class Host:
    """One namespace, `address` its end of the link to this namespace."""

    name: str
    link: str
    address: str

    def argv(self, command: list[str]) -> list[str]:
        """`command` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        """Take the link down: packets either way are dropped without a word."""
        _ip("link", "set", self.link, "down")

    def heal(self) -> None:
        """Bring the link back."""
        _ip("link", "set", self.link, "up")


@dataclass
class Network:
    """The services' address (`server`) and the hosts made so far."""

    server: str
    subnet: int
    hosts: list[Host] = field(default_factory=list)

    def host(self) -> Host:
        """A new namespace that reaches `server` over a link of its own."""
        n = len(self.hosts) + 1
        tag = f"{self.subnet}x{n}"
        name, link, peer = f"pt-{tag}", f"pt{tag}a", f"pt{tag}b"
        outside, inside = f"10.232.{self.subnet}.{4 * n + 1}", f"10.232.{self.subnet}.{4 * n + 2}"
        _ip("netns", "add", name)
        host = Host(name, link, inside)
        self.hosts.append(host)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", name)
        _ip("addr", "add", f"{outside}/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", name, "addr", "add", f"{inside}/30", "dev", peer)
        _ip("-n", name, "link", "set", peer, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", f"{self.server}/32", "via", outside)
        return host

    def remove(self) -> None:
        """Remove the hosts and the services' address."""
        for host in self.hosts:
            _ip("link", "del", host.link, check=False)
            _ip("netns", "del", host.name, check=False)
        _ip("addr", "del", f"{self.server}/32", "dev", "lo", check=False)


@contextmanager
def network() -> Iterator[Network]:
    """A services' address on loopback and room for hosts; all removed afterwards."""
    require_netns()
    subnet = random.randrange(1, 250)
    net = Network(f"10.231.{subnet}.1", subnet)
    _ip("addr", "add", f"{net.server}/32", "dev", "lo")
    try:
        yield net
    finally:
        net.remove()
