package fieldsync

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// bindable are the type expressions gobind binds that this package uses.
var bindable = map[string]bool{
	"string": true, "bool": true, "int": true, "int32": true, "int64": true, "float64": true,
	"error": true, "[]byte": true, "*Client": true, "Listener": true,
}

// The exported surface keeps to gobind's types, so no member is skipped
// when it is bound (mobile/bindtest runs gobind itself; this catches a
// slip in a second, where gobind takes a minute): every exported
// function's and method's parameters and results, every method of
// Listener, no exported field, no exported variable.
func TestExportedSurfaceIsBindable(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	exprs := func(fl *ast.FieldList) []ast.Expr {
		var out []ast.Expr
		if fl == nil {
			return nil
		}
		for _, f := range fl.List {
			n := max(len(f.Names), 1)
			for range n {
				out = append(out, f.Type)
			}
		}
		return out
	}
	check := func(where string, ft *ast.FuncType) {
		if ft.TypeParams != nil {
			t.Errorf("%s: type parameters are not bindable", where)
		}
		for _, e := range append(exprs(ft.Params), exprs(ft.Results)...) {
			if s := types(e); !bindable[s] {
				t.Errorf("%s: %s is not bindable (want one of string, bool, signed ints, float64, error, []byte, *Client, Listener)", where, s)
			}
		}
		if r := exprs(ft.Results); len(r) > 2 || len(r) == 2 && types(r[1]) != "error" {
			t.Errorf("%s: gobind binds one result, or one and an error", where)
		}
	}
	n := 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() {
						continue
					}
					if d.Recv != nil {
						if recv := types(d.Recv.List[0].Type); recv != "*Client" {
							continue // methods of unexported types are not bound
						}
					}
					n++
					check(d.Name.Name, d.Type)
				case *ast.GenDecl:
					for _, s := range d.Specs {
						switch s := s.(type) {
						case *ast.ValueSpec:
							for _, name := range s.Names {
								if name.IsExported() && d.Tok == token.VAR {
									t.Errorf("exported variable %s: gobind binds constants and functions only here", name)
								}
							}
						case *ast.TypeSpec:
							if !s.Name.IsExported() {
								continue
							}
							switch tt := s.Type.(type) {
							case *ast.StructType:
								for _, fld := range tt.Fields.List {
									for _, name := range fld.Names {
										if name.IsExported() {
											t.Errorf("%s.%s: an exported field", s.Name, name)
										}
									}
								}
							case *ast.InterfaceType:
								for _, m := range tt.Methods.List {
									n++
									check(s.Name.Name+"."+m.Names[0].Name, m.Type.(*ast.FuncType))
								}
							default:
								t.Errorf("exported type %s: only the Client struct and the Listener interface are bound", s.Name)
							}
						}
					}
				}
			}
		}
	}
	if n < 30 {
		t.Fatalf("checked %d functions and methods: the parse missed the package", n)
	}
}

// types writes a type expression as Go source.
func types(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return "*" + types(e.X)
	case *ast.ArrayType:
		if e.Len == nil {
			return "[]" + types(e.Elt)
		}
		return "[N]" + types(e.Elt)
	case *ast.SelectorExpr:
		return types(e.X) + "." + e.Sel.Name
	case *ast.MapType:
		return "map[" + types(e.Key) + "]" + types(e.Value)
	case *ast.ChanType:
		return "chan " + types(e.Value)
	case *ast.FuncType:
		return "func"
	case *ast.Ellipsis:
		return "..." + types(e.Elt)
	case *ast.InterfaceType:
		return "interface{}"
	}
	return "?"
}
