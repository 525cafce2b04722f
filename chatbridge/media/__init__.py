"""The media store: files the bridge keeps (inbound WhatsApp media, uploads), their limits,
and the short-lived signed URLs they are served by."""
