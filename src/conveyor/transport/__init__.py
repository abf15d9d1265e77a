"""Transports: how the engine reaches hosts, one connection per host reused for every phase.

- base.py: the interface, `Transport.connect(host) -> Connection` and `Connection.run` / `http_get` / `close`;
- local.py: a host is a directory on this machine and host scripts run with `sh` (the demo, tests, one server);
- clients.py: the SSH transport a host's `ssh.client` names, each loaded only when a host uses it;
- ssh.py: hosts through asyncssh (imported by _asyncssh.py), in-process, bastions shared (the default);
- openssh.py: hosts through the OpenSSH client, one multiplexed master per host (`ssh.client: openssh`);
- remote.py: what both SSH clients share (endpoints, fast algorithms, stopping a timed-out script);
- hostnet.py: HTTP from a host's side: httpx over byte streams opened from the host (the checks' one client
  and policy, checks/client.py, whichever transport a host has); tunnel.py opens them as asyncssh channels,
  openssh.py as `ssh -W` sessions;
- mock.py: records every call and answers from a script per host and step, for tests and plug-in authors;
  a `Workspace` takes it through `transports=`.
"""
