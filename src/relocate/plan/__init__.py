"""Pure planning: inventory + target facts + policy -> Plan. No I/O here."""

from relocate.plan.model import Finding, Plan, Step  # noqa: F401
