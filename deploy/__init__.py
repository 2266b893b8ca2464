"""Deployment helpers: the network lab (and, later, the systemd unit and install script)."""
