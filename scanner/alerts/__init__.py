"""Alerts: findings become mails through an outbox table, never lost, sent once.

settings.py  [alerts.email] validated into EmailSettings
compose.py   findings and bundles to subject, plain text and HTML (pure)
outbox.py    findings and their outbox rows, written inside the scan's transaction
email.py     EmailMessage building and smtplib sending (STARTTLS, SMTPS or plain)
deliver.py   due rows: digest, hourly cap, send, back-off
"""
