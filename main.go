// Command ganeti-node is the node agent of a Ganeti-style cluster. It
// only wires the command line; see the README for the architecture.
package main

import (
	"fmt"
	"os"

	"ganeti-node/cli"
)

func main() {
	if err := cli.Run(cli.NewApp(), os.Args); err != nil {
		if !cli.Silent(err) {
			fmt.Fprintf(os.Stderr, "ganeti-node: %v\n", err)
		}
		os.Exit(1)
	}
}
