"""Live feeds (tier 2): emergencies, live sessions, edge devices, and the core's end of the open edge relay protocol
(``protocol``): the hub that edge agents connect out to, which relays HLS segments only while a session stays allowed."""
