package config

import "go.yaml.in/yaml/v3"

// Locate returns the line and column of the value at path in a parsed
// file ("trunks", 1, "limits", "cps"), or of the deepest node of the path
// that the file has (a key left out is reported where it would go), and
// the dotted key of path ("trunks[1].limits.cps"). It is how validation
// errors find their lines, for callers that judge a valid file (audit).
func Locate(root *yaml.Node, path ...any) (line, column int, key string) {
	if n := lookup(root, path); n != nil {
		line, column = n.Line, n.Column
	}
	return line, column, keyString(path)
}

// Has reports whether a parsed file gives the key of path.
func Has(root *yaml.Node, path ...any) bool {
	_, ok := walk(root, path)
	return ok
}
