"""`python -m unit_tf COMMAND ...`: the `unit-tf` console command without the installed script."""

from unit_tf.commands import run

if __name__ == "__main__":
    run()
