// Command sipwarden is the SIP security edge. See `sipwarden --help`.
package main

import (
	"os"

	"github.com/sipwarden/sipwarden/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
