"""SSH: the only package that imports paramiko (demo/sshserver.py, the demo's own
server, aside).

- via.py: SSH addresses as relocate.yaml writes them (`SshSpec`), their one grammar
  and the one `via:` resolver. Pure: config.py and the planner import it, so this
  package's __init__ imports nothing.
- connection.py: `Connection`, one paramiko transport with OpenSSH's host-key rules;
  commands, SFTP, direct-tcpip channels (a bastion hop, a health check).
- sftp.py: the SFTP calls paramiko has no public API for (a file created with its mode).
- openssh.py: bulk streams through the system `ssh`, pinned to the key paramiko checked.
- tunnel.py: a local port forwarded through a bastion (`ssh -L`) for database tools.
"""
