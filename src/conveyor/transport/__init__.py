"""Transports: how the engine reaches hosts, one connection per host reused for every phase.

- base.py: the interface, `Transport.connect(host) -> Connection` and `Connection.run` / `http_get` / `close`;
- local.py: a host is a directory on this machine and host scripts run with `sh` (the demo, tests, one server);
- ssh.py: hosts over OpenSSH through asyncssh (imported by _asyncssh.py), bastions shared;
- tunnel.py: HTTP from an SSH host's side: httpx over direct-tcpip channels of its connection (the checks'
  one client and policy, checks/client.py, whichever transport a host has);
- mock.py: records every call and answers from a script per host and step, for tests and plug-in authors;
  a `Workspace` takes it through `transports=`.
"""
