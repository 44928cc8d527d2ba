"""Tool commands of ``lightning-gen`` (each a module with ``main(argv)``; the table is in ``lightning_gen.__main__``)."""
