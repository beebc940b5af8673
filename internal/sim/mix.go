package sim

import "math/rand"

// Mixes is the number of fault mixes OptionsFor cycles through.
const Mixes = 8

// OptionsFor expands a seed into a run: seed mod Mixes picks the fault mix
// (clean, lossy, partition, crashes, equivocate + vote-all, withhold +
// garbage, all at once, a long outage with catch-up); the seed also draws
// the mix's parameters.
func OptionsFor(seed int64) Options { return OptionsForMix(seed, int(seed%Mixes)) }

// OptionsForMix expands a seed into a run of the given mix (regression
// seeds keep the mix they were found in).
func OptionsForMix(seed int64, mix int) Options {
	rng := rand.New(rand.NewSource(seed))
	o := Options{Seed: seed, Mix: mix, Nodes: 7, Faults: 1500, Heal: 1500, Txs: 40, MinDelay: 1, MaxDelay: 10,
		Byzantine: make([]Behaviour, 7)}
	byz := func(bs ...Behaviour) {
		for k, i := range rng.Perm(7)[:len(bs)] {
			o.Byzantine[i] = bs[k]
		}
	}
	switch mix {
	case 0: // clean network, jittery delays
		o.MaxDelay = 5 + uint64(rng.Intn(20))
	case 1: // lossy: drops, duplicates, reordering
		o.Drop = 0.01 + 0.05*rng.Float64()
		o.Duplicate = 0.05 * rng.Float64()
		o.MaxDelay = 10 + uint64(rng.Intn(40))
	case 2: // a partition that heals
		o.Partition = true
	case 3: // crashes and restarts, half the time losing recent writes
		o.Crashes = 1 + rng.Intn(3)
		o.Rollback = rng.Intn(2) == 0
	case 4: // f = 2 Byzantine: equivocation and blind voting
		byz(Equivocate, VoteAll)
	case 5: // f = 2 Byzantine: withholding and garbage
		byz(Withhold, Garbage)
	case 6: // everything at once, with one Byzantine node
		o.Drop = 0.02
		o.Duplicate = 0.02
		o.MaxDelay = 20
		o.Partition = true
		o.Crashes = 1
		byz([]Behaviour{Equivocate, VoteAll, Withhold, Garbage}[rng.Intn(4)])
		o.Rollback = rng.Intn(2) == 0
	case 7: // one node down for several GC depths under load: on restart it
		// commits many rounds at once and must fetch batches of certificates
		// already below its GC horizon
		o.Faults = 3000
		o.Txs = 200
		o.Outage = rng.Perm(7)[:1+rng.Intn(2)]
	}
	return o
}
