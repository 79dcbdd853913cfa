"""``python -m palyrad`` = ``palyrad``."""

from palyrad.main import main

main()
