// Package bench holds DSN's benchmarks: a 7-node in-process committee over
// real gRPC and pebble (services/node/nodetest) driven at fixed offered
// loads, reporting what users care about — latency percentiles and
// transactions per second — as tables (go-pretty), JSON in results/ and,
// for Latency, Throughput, Lab and E2E, PNG plots beside it (gonum/plot).
//
//	go test ./bench -bench DAG       certificates/s and batches/s
//	go test ./bench -bench Latency   submit→ordered latency at several loads
//	go test ./bench -bench Throughput  the highest load sustained (99 % ordered, p99 within a bound)
//	go test ./bench -bench Kernel    the DSN kernel's cost in the PVM per sub-DAG
//	go test ./bench -bench E2E       submit→ordered→verified through the whole stack
//	go test ./bench -bench Lab       submit→ordered on the lab's containers (skips without Docker)
package bench
