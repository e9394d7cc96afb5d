package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/redraft/redraft/fsm"
)

// The operator subcommands talk to a running node's admin HTTP port
// (--http-addr), or work offline on a data dir.

func adminGet(addr, path string) (*http.Response, error) {
	if addr == "" {
		return nil, errors.New("--http-addr is required (the node's admin address)")
	}
	c := &http.Client{Timeout: 10 * time.Minute}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, b)
	}
	return resp, nil
}

// cmdStatus prints a node's /status.
func cmdStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("http-addr", os.Getenv("REDRAFT_HTTP_ADDR"), "the node's admin address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	resp, err := adminGet(*addr, "/status")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Println(string(b))
	return nil
}

// cmdSnapshot is "snapshot save FILE" (online backup from a running node)
// and "snapshot restore FILE" (seed an empty data dir from a backup).
func cmdSnapshot(args []string) error {
	if len(args) < 2 || (args[0] != "save" && args[0] != "restore") {
		return errors.New("usage: redraft snapshot save FILE --http-addr ADDR | redraft snapshot restore FILE --data-dir DIR")
	}
	verb, file := args[0], args[1]
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	addr := fs.String("http-addr", os.Getenv("REDRAFT_HTTP_ADDR"), "the node's admin address (save)")
	dataDir := fs.String("data-dir", os.Getenv("REDRAFT_DATA_DIR"), "an empty data dir to seed (restore)")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if verb == "save" {
		resp, err := adminGet(*addr, "/snapshot")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		tmp := file + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, resp.Body)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
		fmt.Printf("saved %d bytes to %s\n", n, file)
		return os.Rename(tmp, file)
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	for _, raftState := range []string{"wal", "raft.db", "snapshots", "fsm.db"} {
		if _, err := os.Stat(filepath.Join(*dataDir, raftState)); err == nil {
			return fmt.Errorf("%s already holds state (%s): restore seeds a new, empty data dir", *dataDir, raftState)
		}
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := fsm.Seed(filepath.Join(*dataDir, "fsm.db"), f); err != nil {
		return err
	}
	fmt.Printf("seeded %s from %s; seed every node of the new cluster the same way, then start them\n", *dataDir, file)
	return nil
}
