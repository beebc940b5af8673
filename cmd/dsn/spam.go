package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/load"
)

func spamCommand() command {
	return command{name: "spam", summary: "send timestamped transactions to a node at a given rate", run: runSpam}
}

func runSpam(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("spam", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:64012", "a node's transactions address")
	rate := fs.Float64("rate", 100, "transactions per second (0: as fast as --sleep and --concurrency allow)")
	sleep := fs.Duration("sleep", 0, "pause after each transaction per sender (the PoC's --sleep, e.g. 10ms)")
	minSize := fs.Int("min-size", 512, "smallest transaction in bytes")
	maxSize := fs.Int("max-size", 512, "largest transaction in bytes")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted or --count)")
	count := fs.Uint64("count", 0, "stop after this many transactions (0: no limit)")
	concurrency := fs.Int("concurrency", 64, "transactions in flight at once")
	firstSeq := fs.Uint64("first-seq", 1, "sequence number stamped into the first transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *minSize < load.HeaderSize || *maxSize < *minSize {
		return fmt.Errorf("sizes: need %d <= min-size <= max-size", load.HeaderSize)
	}
	if *rate < 0 || *concurrency < 1 {
		return fmt.Errorf("rate must be >= 0 and concurrency >= 1")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := dsnv1.NewTransactionsClient(conn)

	var sent, acked, failed atomic.Uint64
	var seq atomic.Uint64
	tokens := make(chan struct{}, *concurrency)
	if *rate > 0 {
		go func() {
			interval := time.Duration(float64(time.Second) / *rate)
			t := time.NewTicker(max(interval, time.Microsecond))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					select {
					case tokens <- struct{}{}:
					default: // senders are saturated: the offered rate is not reached
					}
				}
			}
		}()
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastAcked uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a := acked.Load()
				fmt.Printf("sent %d acked %d (%d/s) failed %d\n", sent.Load(), a, a-lastAcked, failed.Load())
				lastAcked = a
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for ctx.Err() == nil {
				if *rate > 0 {
					select {
					case <-ctx.Done():
						return
					case <-tokens:
					}
				}
				n := seq.Add(1)
				if *count > 0 && n > *count {
					return
				}
				s := *firstSeq + n - 1
				size := *minSize + rng.IntN(*maxSize-*minSize+1)
				tx := load.Make(rng, size, time.Now(), s)
				sent.Add(1)
				if _, err := client.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: tx}); err != nil {
					if c := status.Code(err); ctx.Err() == nil && c != codes.Canceled && c != codes.DeadlineExceeded {
						failed.Add(1)
						fmt.Printf("transaction %d: %v\n", s, err)
					}
				} else {
					acked.Add(1)
				}
				if *sleep > 0 {
					time.Sleep(*sleep)
				}
			}
		}(w)
	}
	wg.Wait()
	fmt.Printf("done: sent %d acked %d failed %d\n", sent.Load(), acked.Load(), failed.Load())
	return nil
}
