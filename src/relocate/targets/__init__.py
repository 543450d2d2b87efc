"""Where the app goes. paramiko lives only in this package."""
