"""lit-vir's own subcommands (`lit-vir TOOL`), each a module with `main(argv)`."""
