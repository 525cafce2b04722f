"""The CRM around conversations: people and their phone numbers, links from threads to
people, notes, tasks, calls and their transcription."""
