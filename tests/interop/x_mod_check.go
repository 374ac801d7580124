// Independent check of a Sanad export with the Go checksum database's packages
// (golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog), which Sanad did not write.
//
// Usage: go run x_mod_check.go VKEY EXPORT_DIR [OLD_SIZE [INDEX]]
//
// It opens the checkpoint with note.Open, recomputes the tree hash through tlog's
// TileHashReader over the export's tiles (which authenticates every tile it reads against the
// signed root), checks every entry's record hash, and prints, for the tests to compare with
// `sanad log prove`, the record proof of INDEX and the tree proof from OLD_SIZE, one base64 hash
// per line, each block after a header line.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type exportTiles struct{ dir string }

func (exportTiles) Height() int { return 8 }

// Go names tiles tile/<H>/<L>/<N>; C2SP tlog-tiles drops the height: tile/<L>/<N>.
func (r exportTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		path := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
		data, err := os.ReadFile(filepath.Join(r.dir, path))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (exportTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "x/mod check FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: VKEY EXPORT_DIR [OLD_SIZE [INDEX]]")
	}
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fail("verifier key: %v", err)
	}
	dir := os.Args[2]
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint text %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("tree size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("root hash: %v", err)
	}
	var tree tlog.Tree
	tree.N = size
	copy(tree.Hash[:], rootBytes)

	reader := tlog.TileHashReader(tree, exportTiles{dir})
	got, err := tlog.TreeHash(size, reader)
	if err != nil || got != tree.Hash {
		fail("tree hash from tiles: %v (%v)", got, err)
	}

	// Every entry's record hash equals the authenticated level-0 hash.
	for start := int64(0); start < size; start += 256 {
		width := size - start
		if width > 256 {
			width = 256
		}
		path := fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: start / 256, W: int(width)}.Path(), "tile/8/0/"))
		bundle, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil {
			fail("%v", err)
		}
		indexes := make([]int64, width)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		hashes, err := reader.ReadHashes(indexes)
		if err != nil {
			fail("reading level-0 hashes: %v", err)
		}
		rest := bundle
		for i := int64(0); i < width; i++ {
			if len(rest) < 2 {
				fail("bundle %s truncated", path)
			}
			length := int(binary.BigEndian.Uint16(rest))
			entry := rest[2 : 2+length]
			rest = rest[2+length:]
			if tlog.RecordHash(entry) != hashes[i] {
				fail("entry %d does not hash to its tile hash", start+i)
			}
		}
		if len(rest) != 0 || !bytes.Equal(rest, []byte{}) {
			fail("bundle %s has trailing bytes", path)
		}
	}
	fmt.Printf("ok %d\n", size)

	if len(os.Args) >= 4 {
		old, _ := strconv.ParseInt(os.Args[3], 10, 64)
		proof, err := tlog.ProveTree(size, old, reader)
		if err != nil {
			fail("ProveTree: %v", err)
		}
		oldHash, err := tlog.TreeHash(old, reader)
		if err != nil {
			fail("TreeHash(old): %v", err)
		}
		if err := tlog.CheckTree(proof, size, tree.Hash, old, oldHash); err != nil {
			fail("CheckTree: %v", err)
		}
		fmt.Println("tree-proof")
		for _, h := range proof {
			fmt.Println(base64.StdEncoding.EncodeToString(h[:]))
		}
	}
	if len(os.Args) >= 5 {
		index, _ := strconv.ParseInt(os.Args[4], 10, 64)
		proof, err := tlog.ProveRecord(size, index, reader)
		if err != nil {
			fail("ProveRecord: %v", err)
		}
		fmt.Println("record-proof")
		for _, h := range proof {
			fmt.Println(base64.StdEncoding.EncodeToString(h[:]))
		}
	}
}
