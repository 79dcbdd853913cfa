"""The webhook listener: its HTTP/1.1 transport (http_server) and what it serves."""
