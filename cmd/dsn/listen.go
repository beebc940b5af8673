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
		for {
			r, err := st.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, io.EOF) {
					err = errors.New("stream closed")
				}
				fmt.Fprintf(os.Stderr, "listen: %v; reconnecting from %d\n", err, last)
				time.Sleep(500 * time.Millisecond)
				break
			}
			pb := r.GetPreBlock()
			if pb == nil {
				continue // heartbeat
			}
			if pb.Index != last+1 {
				return fmt.Errorf("gap: got pre-block %d after %d", pb.Index, last)
			}
			last = pb.Index
			if err := printPreBlock(pb, w); err != nil {
				return err
			}
			if seen++; *count > 0 && seen >= *count {
				return nil
			}
		}
	}
	return nil
}

func printPreBlock(pb *dsnv1.PreBlock, w *csv.Writer) error {
	now := time.Now()
	var txs, size int
	var lats []time.Duration
	minRound, maxRound := ^uint64(0), uint64(0)
	for i, raw := range pb.Certificates {
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			return fmt.Errorf("pre-block %d: %w", pb.Index, err)
		}
		minRound, maxRound = min(minRound, c.Round()), max(maxRound, c.Round())
		for _, rb := range pb.Batches[i].Batches {
			b, err := narwhal.DecodeBatch(rb)
			if err != nil {
				return fmt.Errorf("pre-block %d: %w", pb.Index, err)
			}
			for _, tx := range b.Transactions {
				txs++
				size += len(tx)
				if sent, ok := load.SentAt(tx); ok {
					lats = append(lats, now.Sub(sent))
					if w != nil {
						seq, _ := load.Seq(tx)
						w.Write([]string{strconv.FormatUint(seq, 10), strconv.FormatInt(sent.UnixNano(), 10),
							strconv.FormatInt(now.UnixNano(), 10), strconv.FormatUint(pb.Index, 10)})
					}
				}
			}
		}
	}
	p := load.Summarize(lats)
	fmt.Printf("%8d %7d %10d %9s %9s %d-%d\n", pb.Index, txs, size, p.P50.Round(time.Millisecond), p.Max.Round(time.Millisecond), minRound, maxRound)
	return nil
}
