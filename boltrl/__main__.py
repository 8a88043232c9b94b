from boltrl.cli import run

run()
