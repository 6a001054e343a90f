package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator checks one configuration file and collects every problem in it,
// each with the file, line, column and full dotted key. Parse uses one for
// the whole file; a stage package can check its own section (a yaml.Node)
// with the same one, so its errors read like every other.
type Validator = validator

// NewValidator returns a validator of file, whose whole YAML tree is root
// (a document or a mapping node): Fail finds a key's line in it.
func NewValidator(file string, root *yaml.Node) *Validator {
	return &validator{file: file, root: root}
}

// Decode decodes n, found at path, into the value dst points to, strictly:
// each unknown key and each value of the wrong type is an error at its own
// line and column, with its full key path, and the other keys are still
// decoded, so that one mistake does not hide the next.
func (v *validator) Decode(path []any, n *yaml.Node, dst any) {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("config: Decode needs a non-nil pointer")
	}
	v.decode(path, n, rv.Elem())
}

// Fail records an error of the value at path (e.g. "trunks", 1, "limits", "cps").
func (v *validator) Fail(path []any, format string, args ...any) { v.fail(path, format, args...) }

// Warn records a warning at path: the file is valid, but a setting contradicts another.
func (v *validator) Warn(path []any, format string, args ...any) { v.warn(path, format, args...) }

// Err returns the errors recorded so far (an Errors sorted by line), or nil.
func (v *validator) Err() error {
	if len(v.errs) == 0 {
		return nil
	}
	v.sort()
	return v.errs
}

// Warnings returns the warnings recorded so far.
func (v *validator) Warnings() Errors { return v.warns }

// maxDecodeNodes bounds the nodes one file may expand to through aliases
// (a "billion laughs" file is an error, not an hour of work).
const maxDecodeNodes = 1 << 20

// markBad notes that the value at path could not be decoded: checks of its
// (zero) value would only repeat the problem, so fail skips them.
func (v *validator) markBad(path []any) {
	if v.bad == nil {
		v.bad = map[string]bool{}
	}
	v.bad[keyString(path)] = true
}

// suppressed reports whether key is, or is inside, a value that failed to decode.
func (v *validator) suppressed(key string) bool {
	for b := range v.bad {
		if key == b || strings.HasPrefix(key, b+".") || strings.HasPrefix(key, b+"[") {
			return true
		}
	}
	return false
}

// failAt records an error at node n (for problems the decoder finds, where
// the node is known and lookup by path could not reach it, e.g. an unknown key).
func (v *validator) failAt(path []any, n *yaml.Node, format string, args ...any) {
	e := &Error{File: v.file, Key: keyString(path), Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
	v.markBad(path)
}

func at(path []any, parts ...any) []any {
	return append(append(make([]any, 0, len(path)+len(parts)), path...), parts...)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (v *validator) decode(path []any, n *yaml.Node, dst reflect.Value) {
	if n == nil {
		return
	}
	v.nodes++
	if v.nodes > maxDecodeNodes {
		if v.nodes == maxDecodeNodes+1 {
			v.failAt(path, n, "the file expands to more than %d values (aliases of aliases?)", maxDecodeNodes)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		v.decode(path, n.Alias, dst)
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			v.decode(path, n.Content[0], dst)
		}
		return
	}
	if isNull(n) {
		return // absent: the zero value, the default
	}
	t := dst.Type()
	if t.Kind() == reflect.Pointer {
		nv := reflect.New(t.Elem())
		before := len(v.errs)
		v.decode(path, n, nv.Elem())
		// a section with a mistake inside still counts as given (its other
		// keys are checked); a scalar that did not decode stays absent
		if len(v.errs) == before || t.Elem().Kind() == reflect.Struct {
			dst.Set(nv)
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && (t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode) {
		if err := n.Decode(dst.Addr().Interface()); err != nil {
			v.failAt(path, n, "%s", typeErrorMsg(err, t, n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			v.failAt(path, n, "must be a mapping with the keys %s, got %s", strings.Join(structKeys(t), ", "), describe(n))
			return
		}
		v.decodeStruct(path, n, dst)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			v.failAt(path, n, "must be a list ([a, b] or one \"- item\" a line), got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			v.decode(at(path, i), item, s.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			v.failAt(path, n, "must be a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v.duplicate(path, seen, n.Content[i]) {
				continue
			}
			k := reflect.New(t.Key())
			if err := n.Content[i].Decode(k.Interface()); err != nil {
				v.failAt(path, n.Content[i], "key %s: %s", describe(n.Content[i]), typeErrorMsg(err, t.Key(), n.Content[i]))
				continue
			}
			val := reflect.New(t.Elem())
			v.decode(at(path, n.Content[i].Value), n.Content[i+1], val.Elem())
			m.SetMapIndex(k.Elem(), val.Elem())
		}
		dst.Set(m)
	case reflect.Interface:
		if err := n.Decode(dst.Addr().Interface()); err != nil {
			v.failAt(path, n, "%v", err)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			v.failAt(path, n, "must be %s, got %s", want(t), describe(n))
			return
		}
		if k := t.Kind(); k >= reflect.Int && k <= reflect.Uint64 && n.ShortTag() != "!!int" {
			// the YAML library would truncate 1.5 to 1
			v.failAt(path, n, "must be %s, got %s", want(t), describe(n))
			return
		}
		if err := n.Decode(dst.Addr().Interface()); err != nil {
			v.failAt(path, n, "%s", typeErrorMsg(err, t, n))
		}
	}
}

// decodeStruct decodes the mapping n into the struct dst, key by key.
func (v *validator) decodeStruct(path []any, n *yaml.Node, dst reflect.Value) {
	fields := map[string][]int{}
	collectFields(dst.Type(), nil, fields)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.Value == "<<" && kn.Tag == "!!merge" {
			v.merge(path, vn, dst)
			continue
		}
		if v.duplicate(path, seen, kn) {
			continue
		}
		idx, ok := fields[kn.Value]
		if !ok || kn.Kind != yaml.ScalarNode {
			valid := structKeys(dst.Type())
			msg := "unknown key"
			if s := suggest(kn.Value, valid); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			v.failAt(at(path, kn.Value), kn, "%s; valid keys here: %s", msg, strings.Join(valid, ", "))
			continue
		}
		v.decode(at(path, kn.Value), vn, fieldByIndexAlloc(dst, idx))
	}
}

// duplicate reports the key kn as an error if seen (the earlier keys of
// its mapping, by name, with their lines) holds it: the YAML library would
// silently keep the last.
func (v *validator) duplicate(path []any, seen map[string]int, kn *yaml.Node) bool {
	if kn.Kind != yaml.ScalarNode {
		return false
	}
	if line, dup := seen[kn.Value]; dup {
		v.errs = append(v.errs, &Error{File: v.file, Line: kn.Line, Column: kn.Column, Key: keyString(at(path, kn.Value)),
			Msg: fmt.Sprintf("given twice (first at line %d): keep one", line)})
		return true
	}
	seen[kn.Value] = kn.Line
	return false
}

// merge applies a "<<: *anchor" (or a list of them) to dst.
func (v *validator) merge(path []any, n *yaml.Node, dst reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		v.decodeStruct(path, n, dst)
	case yaml.SequenceNode:
		for _, m := range n.Content {
			v.merge(path, m, dst)
		}
	default:
		v.failAt(path, n, "<< must merge a mapping (an alias such as *defaults), got %s", describe(n))
	}
}

func fieldByIndexAlloc(v reflect.Value, idx []int) reflect.Value {
	for i, x := range idx {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// collectFields maps each YAML key of struct type t to its field index,
// through inline fields.
func collectFields(t reflect.Type, prefix []int, out map[string][]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		idx := append(append([]int{}, prefix...), i)
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			collectFields(ft, idx, out)
			continue
		}
		if tag == "-" || (!f.IsExported() && tag == "") {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		out[tag] = idx
	}
}

// structKeys lists the YAML keys of struct type t, in declaration order.
func structKeys(t reflect.Type) []string {
	var keys []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if strings.Contains(opts, "inline") {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				walk(ft)
				continue
			}
			if tag == "-" || (!f.IsExported() && tag == "") {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			keys = append(keys, tag)
		}
	}
	walk(t)
	return keys
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "got ..." in a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", v)
	case "!!int":
		return "the integer " + v
	case "!!float":
		return "the number " + v
	case "!!bool":
		return "the boolean " + v
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), v)
}

// want says what a value of Go type t looks like in YAML.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer >= 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return "a " + t.String()
}

// typeErrorMsg turns the decoder's error for node n into "must be X, got Y";
// an error of a custom unmarshaler keeps its own words.
func typeErrorMsg(err error, t reflect.Type, n *yaml.Node) string {
	msg := err.Error()
	var te *yaml.TypeError
	if ok := asTypeError(err, &te); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
		if m := lineRe.FindStringSubmatch(msg); m != nil {
			msg = m[2]
		}
		if strings.Contains(msg, "cannot unmarshal") {
			return fmt.Sprintf("must be %s, got %s", want(t), describe(n))
		}
	}
	return msg
}

func asTypeError(err error, te **yaml.TypeError) bool {
	t, ok := err.(*yaml.TypeError) //nolint:errorlint // the decoder returns it unwrapped
	if ok {
		*te = t
	}
	return ok
}
