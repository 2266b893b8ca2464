"""Deployment: the network lab (deploy/lab), the systemd unit (sterimesh.service), the
install script (install.sh) and an example node.toml (node.toml.example)."""
