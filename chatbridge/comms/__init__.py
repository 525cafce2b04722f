"""Comms: WhatsApp threads, the people they are linked to, notes, tasks and call logs."""
