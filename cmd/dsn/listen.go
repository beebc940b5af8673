package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
)

func listenCommand() command {
	return command{name: "listen", summary: "follow a node's pre-block stream and print each pre-block", run: runListen}
}

func runListen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:64011", "a node's export address")
	from := fs.Uint64("from", 0, "last pre-block index already seen (0: start at 1)")
	count := fs.Uint64("count", 0, "stop after this many pre-blocks (0: never)")
	csvPath := fs.String("csv", "", "write one row per stamped transaction: seq,sent_unix_ns,received_unix_ns,index")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var w *csv.Writer
	if *csvPath != "" {
		f, err := os.Create(*csvPath)
		if err != nil {
			return err
		}
		defer f.Close()
		w = csv.NewWriter(f)
		defer w.Flush()
		w.Write([]string{"seq", "sent_unix_ns", "received_unix_ns", "index"})
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := dsnv1.NewExportClient(conn)
	last, seen := *from, uint64(0)
	fmt.Printf("%8s %7s %10s %9s %9s %s\n", "index", "txs", "bytes", "lat_p50", "lat_max", "rounds")
	for ctx.Err() == nil {
		st, err := client.Export(ctx, &dsnv1.ExportRequest{From: last})
		if err != nil {
			return err
		}
		// Pre-blocks come in parts (internal/preblock); each batch is
		// counted as it arrives, so no pre-block is held whole.
		rd := preblock.NewReader(st)
		var cur *preBlockStats
		for {
			it, err := rd.Next()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, io.EOF) {
					err = errors.New("stream closed")
				}
				if errors.Is(err, preblock.ErrProtocol) {
					return err
				}
				fmt.Fprintf(os.Stderr, "listen: %v; reconnecting from %d\n", err, last)
				time.Sleep(500 * time.Millisecond)
				break
			}
			switch it.Kind {
			case preblock.KindHeartbeat:
				if hb := it.Heartbeat; hb.WaitingFor != 0 {
					fmt.Fprintf(os.Stderr, "listen: node waits for %d batches of pre-block %d (head %d)\n", hb.MissingBatches, hb.WaitingFor, hb.Head)
				}
			case preblock.KindStart:
				if it.Index != last+1 {
					return fmt.Errorf("gap: got pre-block %d after %d", it.Index, last)
				}
				cur = newPreBlockStats(it.Index)
			case preblock.KindCertificate:
				if err := cur.certificate(it); err != nil {
					return err
				}
			case preblock.KindBatch:
				if err := cur.batch(it.Batch, w); err != nil {
					return err
				}
			case preblock.KindEnd:
				last = it.Index
				cur.print()
				if seen++; *count > 0 && seen >= *count {
					return nil
				}
			}
		}
	}
	return nil
}

// preBlockStats accumulates what listen prints about one pre-block.
type preBlockStats struct {
	index              uint64
	txs, size          int
	lats               []time.Duration
	minRound, maxRound uint64
}

func newPreBlockStats(index uint64) *preBlockStats {
	return &preBlockStats{index: index, minRound: ^uint64(0)}
}

func (p *preBlockStats) certificate(it preblock.Item) error {
	if it.Support {
		return nil
	}
	c, err := narwhal.DecodeCertificate(it.Certificate)
	if err != nil {
		return fmt.Errorf("pre-block %d: %w", p.index, err)
	}
	p.minRound, p.maxRound = min(p.minRound, c.Round()), max(p.maxRound, c.Round())
	return nil
}

func (p *preBlockStats) batch(raw []byte, w *csv.Writer) error {
	now := time.Now()
	b, err := narwhal.DecodeBatch(raw)
	if err != nil {
		return fmt.Errorf("pre-block %d: %w", p.index, err)
	}
	for _, tx := range b.Transactions {
		p.txs++
		p.size += len(tx)
		if sent, ok := load.SentAt(tx); ok {
			p.lats = append(p.lats, now.Sub(sent))
			if w != nil {
				seq, _ := load.Seq(tx)
				w.Write([]string{strconv.FormatUint(seq, 10), strconv.FormatInt(sent.UnixNano(), 10),
					strconv.FormatInt(now.UnixNano(), 10), strconv.FormatUint(p.index, 10)})
			}
		}
	}
	return nil
}

func (p *preBlockStats) print() {
	s := load.Summarize(p.lats)
	fmt.Printf("%8d %7d %10d %9s %9s %d-%d\n", p.index, p.txs, p.size, s.P50.Round(time.Millisecond), s.Max.Round(time.Millisecond), p.minRound, p.maxRound)
}
