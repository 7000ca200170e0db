"""kvmbridge: render and install the persistent configuration that puts a KVM host's VMs on the LAN."""

__version__ = "0.1.0"
