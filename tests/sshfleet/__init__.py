"""A fleet of real OpenSSH servers on loopback, for tests and benchmarks.

Each host is an ``sshd`` on its own 127.0.0.1 port, inside its own mount and UTS namespaces, with its own
hostname, ``/srv`` and ``/root``. Needs root, ``/usr/sbin/sshd`` (openssh-server), ``ssh``/``ssh-keygen``
(openssh-client) and ``unshare`` (util-linux)::

    from sshfleet import Fleet

    with Fleet(tmp_path, 3, bastion=True) as fleet:
        fleet.host("h01").run("hostname")          # CompletedProcess, stdout "h01\\n"
        subprocess.run(["ssh", "-F", fleet.ssh_config, "-J", "bastion", "h02", "true"])

Benchmarks put ``tests/`` on ``sys.path`` and import it the same way.
"""

from sshfleet.fleet import SSHD, Fleet, FleetError, FleetHost, missing_requirements

__all__ = ["SSHD", "Fleet", "FleetError", "FleetHost", "missing_requirements"]
