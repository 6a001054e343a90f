package cli

import (
	"fmt"
	"io"

	"github.com/sipwarden/sipwarden/internal/config"
)

// CheckConfig validates configuration files: `sipwarden check-config FILE...`.
func CheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", "check-config FILE...", stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	failed := false
	for _, file := range fs.Args() {
		cfg, err := config.Load(file)
		if err == nil {
			_, err = buildRuntime(cfg, nil)
		}
		if err != nil {
			failed = true
			printConfigError(stderr, file, err)
			continue
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, "warning: "+w.Error())
		}
		fmt.Fprintf(stdout, "%s: ok (%d listeners, %d upstreams, %d trunks)\n", file, len(cfg.Listen), len(cfg.Upstreams), len(cfg.Trunks))
	}
	if failed {
		return 1
	}
	return 0
}
