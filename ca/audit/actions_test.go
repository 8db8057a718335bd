package audit

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite docs/audit-actions.md from Actions()")

// auditPkg is this package's import path: the source check recognises
// references to its constants by it.
const auditPkg = "github.com/sigil-ca/sigil/ca/audit"

// actionsDoc is the docs page generated from Actions(), relative to the
// module root.
const actionsDoc = "docs/audit-actions.md"

// declaredActions parses actions.go and returns each Action constant's name,
// value and doc comment, in declaration order.
func declaredActions(t *testing.T) []struct{ name, value, doc string } {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "actions.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []struct{ name, value, doc string }
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Action") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s is not a string literal", n.Name)
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				out = append(out, struct{ name, value, doc string }{n.Name, v, vs.Doc.Text()})
			}
		}
	}
	return out
}

// TestActionsRegistered checks that every Action constant is in Actions()
// once, with the sentence of its doc comment as description, and that
// Actions() holds nothing else.
func TestActionsRegistered(t *testing.T) {
	decl := declaredActions(t)
	if len(decl) == 0 {
		t.Fatal("no Action constants found in actions.go")
	}
	reg := map[string]string{}
	for _, a := range Actions() {
		if _, dup := reg[a.Action]; dup {
			t.Errorf("action %q registered twice", a.Action)
		}
		reg[a.Action] = a.Description
	}
	values := map[string]string{}
	for _, d := range decl {
		if other, dup := values[d.value]; dup {
			t.Errorf("%s and %s share the value %q", d.name, other, d.value)
		}
		values[d.value] = d.name
		desc, ok := reg[d.value]
		if !ok {
			t.Errorf("%s (%q) is not in Actions()", d.name, d.value)
			continue
		}
		if !strings.HasPrefix(desc, "is written ") {
			t.Errorf("%s: description %q does not say when it is written", d.name, desc)
		}
		doc := strings.Join(strings.Fields(d.doc), " ")
		if want := d.name + " " + desc; doc != want {
			t.Errorf("%s: doc comment and registered description differ:\ndoc:  %s\nwant: %s", d.name, doc, want)
		}
	}
	if len(reg) != len(decl) {
		t.Errorf("Actions() has %d entries, actions.go declares %d constants", len(reg), len(decl))
	}
}

// moduleRoot is the directory of go.mod above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package")
		}
		dir = parent
	}
}

// actionChecker finds the audit actions a Go file appends or filters on and
// reports each one that is not a registered constant.
type actionChecker struct {
	fset     *token.FileSet
	names    map[string]bool // registered constant names
	values   map[string]bool // registered action values
	carriers map[string]int  // function name -> index of its "action" parameter
	errs     []string
}

func (c *actionChecker) errorf(pos token.Pos, format string, args ...any) {
	c.errs = append(c.errs, c.fset.Position(pos).String()+": "+fmt.Sprintf(format, args...))
}

// check reports an action expression that is a string literal, a constant
// that is not registered, or anything but a constant or a value passed
// through (a variable, a parameter or another event's field).
func (c *actionChecker) check(e ast.Expr, auditName string, inAudit bool, where string) {
	switch x := e.(type) {
	case *ast.BasicLit:
		c.errorf(x.Pos(), "%s: action %s is a literal: use a registered audit.Action constant", where, x.Value)
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok && id.Name == auditName {
			if !c.names[x.Sel.Name] {
				c.errorf(x.Pos(), "%s: %s.%s is not a registered action", where, auditName, x.Sel.Name)
			}
		}
		// Otherwise a field of another value (e.Action): passed through.
	case *ast.Ident:
		if inAudit && strings.HasPrefix(x.Name, "Action") && !c.names[x.Name] {
			c.errorf(x.Pos(), "%s: %s is not a registered action", where, x.Name)
		}
		// Otherwise a variable or parameter: its origin is checked where
		// it is assigned or passed.
	case *ast.ParenExpr:
		c.check(x.X, auditName, inAudit, where)
	case *ast.CallExpr:
		// A value from elsewhere (a query parameter to filter by) unless
		// it is formatted here.
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && (id.Name == "fmt" || id.Name == "strings") {
				c.errorf(x.Pos(), "%s: action is computed: use a registered audit.Action constant", where)
			}
		}
	default:
		c.errorf(e.Pos(), "%s: action is computed: use a registered audit.Action constant", where)
	}
}

// file checks one parsed file.
func (c *actionChecker) file(f *ast.File) {
	inAudit := f.Name.Name == "audit"
	auditName := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == auditPkg {
			auditName = "audit"
			if imp.Name != nil {
				auditName = imp.Name.Name
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.GenDecl:
			// A second vocabulary elsewhere would escape the checks below,
			// which take its names for variables passed through.
			if x.Tok == token.CONST && !inAudit {
				for _, s := range x.Specs {
					for _, id := range s.(*ast.ValueSpec).Names {
						if strings.HasPrefix(id.Name, "Action") {
							c.errorf(id.Pos(), "constant %s: audit actions are declared in ca/audit/actions.go", id.Name)
						}
					}
				}
			}
		case *ast.CompositeLit:
			// Event{Action: ...} and filters such as
			// store.AuditFilter{Action: ...} alike.
			for _, el := range x.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Action" {
					c.check(kv.Value, auditName, inAudit, "Action field")
				}
			}
		case *ast.AssignStmt:
			for i, lhs := range x.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && strings.EqualFold(id.Name, "action") && i < len(x.Rhs) && len(x.Lhs) == len(x.Rhs) {
					c.check(x.Rhs[i], auditName, inAudit, "assignment to "+id.Name)
				}
			}
		case *ast.CallExpr:
			name := ""
			switch fn := x.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			if i, ok := c.carriers[name]; ok && i < len(x.Args) {
				c.check(x.Args[i], auditName, inAudit, "argument of "+name)
			}
		case *ast.KeyValueExpr:
			// A surface name may equal an action by chance ("ui.login").
			if k, ok := x.Key.(*ast.Ident); ok && k.Name == "Surface" {
				return false
			}
		case *ast.BasicLit:
			if x.Kind == token.STRING {
				if v, err := strconv.Unquote(x.Value); err == nil && c.values[v] {
					c.errorf(x.Pos(), "literal %s names an audit action: use its audit.Action constant", x.Value)
				}
			}
		}
		return true
	})
}

// carriers returns the functions of files that take an audit action as a
// parameter named action, with its index, so their call sites are checked
// like Action fields.
func carriers(files []*ast.File) map[string]int {
	out := map[string]int{}
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			i := 0
			for _, p := range fd.Type.Params.List {
				for _, n := range p.Names {
					if n.Name == "action" {
						out[fd.Name.Name] = i
					}
					i++
				}
				if len(p.Names) == 0 {
					i++
				}
			}
		}
	}
	return out
}

// TestNoUnregisteredActions parses every non-test Go file of the module
// (test files and test-support packages aside) and checks that each audit
// action it appends, passes on or filters by is a registered constant: no
// string literal names an action, so the vocabulary has one place.
func TestNoUnregisteredActions(t *testing.T) {
	root := moduleRoot(t)
	c := &actionChecker{fset: token.NewFileSet(), names: map[string]bool{}, values: map[string]bool{}}
	for _, d := range declaredActions(t) {
		c.names[d.name] = true
		c.values[d.value] = true
	}
	var files []*ast.File
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		// The vocabulary itself is the one place literals may appear.
		if rel, _ := filepath.Rel(root, path); filepath.ToSlash(rel) == "ca/audit/actions.go" {
			return nil
		}
		f, err := parser.ParseFile(c.fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		// Test-support packages (store/storetest) are tests: like _test.go
		// files they may spell the stored vocabulary out, to pin it.
		if strings.HasSuffix(f.Name.Name, "test") {
			return nil
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("parsed only %d files under %s", len(files), root)
	}
	c.carriers = carriers(files)
	for _, must := range []string{"RecordSession"} {
		if _, ok := c.carriers[must]; !ok {
			t.Errorf("no function %s with an action parameter: the check no longer sees its callers", must)
		}
	}
	for _, f := range files {
		c.file(f)
	}
	for _, e := range c.errs {
		t.Error(e)
	}
}

// TestActionCheckerCatches runs the checker on a small source with every
// kind of violation, so that TestNoUnregisteredActions cannot pass by
// seeing nothing.
func TestActionCheckerCatches(t *testing.T) {
	src := `package x

import (
	"fmt"

	"github.com/sigil-ca/sigil/ca/audit"
)

func record(tx any, action string) {}

func f(tx any, e audit.Event) {
	_ = audit.Event{Action: "cert.issued"}
	_ = audit.Event{Action: audit.ActionNotThere}
	_ = audit.Event{Action: "x" + fmt.Sprint("y")}
	record(tx, "job.run")
	action := "tidy.completed"
	_ = action
	_ = []string{"key.generated"}
	_ = audit.Event{Action: audit.ActionCertIssued}
	_ = audit.Event{Action: e.Action}
	record(tx, audit.ActionJobRun)
	_ = struct{ Surface string }{Surface: "ui.login"}
}

const ActionElsewhere = "x.y"
`
	c := &actionChecker{fset: token.NewFileSet(), names: map[string]bool{}, values: map[string]bool{}}
	for _, d := range declaredActions(t) {
		c.names[d.name] = true
		c.values[d.value] = true
	}
	f, err := parser.ParseFile(c.fset, "x.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	c.carriers = carriers([]*ast.File{f})
	c.file(f)
	// One line each: the literal, the unregistered constant, the computed
	// action, the literal argument, the literal assignment, the stray
	// literal, the constant declared outside ca/audit; each literal also
	// counts once as a literal naming an action.
	wantLines := map[int]int{12: 2, 13: 1, 14: 1, 15: 2, 16: 2, 18: 1, 25: 1}
	got := map[int]int{}
	for _, e := range c.errs {
		var line int
		if _, err := fmt.Sscanf(e[strings.Index(e, ":")+1:], "%d", &line); err != nil {
			t.Fatalf("cannot read the line of %q", e)
		}
		got[line]++
	}
	for line, n := range wantLines {
		if got[line] != n {
			t.Errorf("line %d: %d errors, want %d (all: %q)", line, got[line], n, c.errs)
		}
	}
	for line := range got {
		if _, ok := wantLines[line]; !ok {
			t.Errorf("line %d: unexpected error (all: %q)", line, c.errs)
		}
	}
}

// actionsMarkdown renders the docs page of the audit actions.
func actionsMarkdown() []byte {
	var b bytes.Buffer
	b.WriteString("# Audit actions\n\n")
	b.WriteString("<!-- Generated from ca/audit/actions.go by `go test ./ca/audit -run TestActionsDoc -update`; do not edit. -->\n\n")
	b.WriteString("Every event of the audit log carries one of these actions. `sigil audit list --action A` and\n")
	b.WriteString("`GET /v1/audit?action=A` filter by one, or by a prefix ending in `.` (`cert.`).\n\n")
	b.WriteString("| action | written |\n| --- | --- |\n")
	for _, a := range Actions() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", a.Action, strings.TrimPrefix(a.Description, "is written "))
	}
	return b.Bytes()
}

// TestActionsDoc checks that the docs list every registered action as
// Actions() describes it; -update rewrites the page.
func TestActionsDoc(t *testing.T) {
	path := filepath.Join(moduleRoot(t), filepath.FromSlash(actionsDoc))
	want := actionsMarkdown()
	if *updateDocs {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ca/audit -run TestActionsDoc -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run go test ./ca/audit -run TestActionsDoc -update", actionsDoc)
	}
	for _, a := range Actions() {
		if !bytes.Contains(got, []byte("| `"+a.Action+"` |")) {
			t.Errorf("%s has no row for %s", actionsDoc, a.Action)
		}
	}
}
