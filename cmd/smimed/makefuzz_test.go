package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakeFuzzListsEveryTarget: `make fuzz` runs every fuzz target of the
// repository in the package that holds it (a target moved to another
// package, or a new one, is not forgotten there).
func TestMakeFuzzListsEveryTarget(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`-fuzz '\^(Fuzz\w+)\$\$' -fuzztime \$\(FUZZTIME\) (\./\S*)`).FindAllStringSubmatch(string(mk), -1) {
		listed[m[1]+" "+m[2]] = true
	}
	def := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	found := map[string]bool{}
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../../")))
		for _, m := range def.FindAllStringSubmatch(string(b), -1) {
			found[m[1]+" "+pkg] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 20 {
		t.Fatalf("found %d fuzz targets, want all of them", len(found))
	}
	for k := range found {
		if !listed[k] {
			t.Errorf("make fuzz does not run %s", k)
		}
	}
	for k := range listed {
		if !found[k] {
			t.Errorf("make fuzz runs %s, which does not exist", k)
		}
	}
}
