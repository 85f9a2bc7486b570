"""Test hosts in network namespaces: one coordinator host, N agent hosts,
each agent host joined to the coordinator host by its own veth pair.

Needs root (CI runs as root); tests skip themselves elsewhere. Addresses
are private to the namespaces this module creates and removes.
"""
import os
import subprocess
import uuid


def available():
    if os.geteuid() != 0:
        return False
    name = "srprobe" + uuid.uuid4().hex[:6]
    ok = subprocess.run(["ip", "netns", "add", name],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True)


class Hosts:
    """hosts.coord is the coordinator's namespace; hosts.agent(i) the i-th
    agent's (1-based); hosts.addr(i) the coordinator's address seen from
    agent i."""

    def __init__(self, n_agents, subnet=213):
        self.tag = uuid.uuid4().hex[:6]
        self.n = n_agents
        self.subnet = subnet
        self.coord = "src-" + self.tag
        self.created = []
        ip("netns", "add", self.coord)
        self.created.append(self.coord)
        ip("-n", self.coord, "link", "set", "lo", "up")
        for i in range(1, n_agents + 1):
            self._add_agent(i)

    def agent(self, i):
        return "sra%d-%s" % (i, self.tag)

    def addr(self, i):
        return "10.%d.%d.1" % (self.subnet, i)

    def agent_addr(self, i):
        return "10.%d.%d.2" % (self.subnet, i)

    def veth(self, i, side):
        return "v%s%d%s" % (side, i, self.tag)

    def _add_agent(self, i):
        ns = self.agent(i)
        ip("netns", "add", ns)
        self.created.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", self.veth(i, "c"), "type", "veth", "peer", "name",
           self.veth(i, "a"))
        ip("link", "set", self.veth(i, "c"), "netns", self.coord)
        ip("link", "set", self.veth(i, "a"), "netns", ns)
        ip("-n", self.coord, "addr", "add", self.addr(i) + "/24", "dev",
           self.veth(i, "c"))
        ip("-n", ns, "addr", "add", self.agent_addr(i) + "/24", "dev",
           self.veth(i, "a"))
        ip("-n", self.coord, "link", "set", self.veth(i, "c"), "up")
        ip("-n", ns, "link", "set", self.veth(i, "a"), "up")

    def cut(self, i):
        """Partition agent i: its link goes down, TCP does not notice."""
        ip("-n", self.agent(i), "link", "set", self.veth(i, "a"), "down")

    def popen(self, ns, cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", ns] + cmd, **kw)

    def close(self):
        for ns in reversed(self.created):
            # Kill anything still running in the namespace, then remove it.
            pids = subprocess.run(["ip", "netns", "pids", ns],
                                  capture_output=True, text=True).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
