from brain.cli import app

app()
