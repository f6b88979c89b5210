"""The fault campaign (`make chaos`): the whole engine disturbed on loopback, then audited."""
