"""Schedules: cron jobs, one-shot reminders and the heartbeat (pure; ``jobs``)."""
