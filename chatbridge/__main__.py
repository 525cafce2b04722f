from chatbridge.cli import app

app()
