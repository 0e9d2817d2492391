"""Package data of captioning (word list, default templates): a package so that the wheel's
`*.json` package-data rule picks these files up."""
