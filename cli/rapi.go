package cli

import "github.com/urfave/cli/v2"

// rapiCmds are the `cluster` subcommands that administer RAPI.
// TODO: issue 6.
func rapiCmds() []*cli.Command { return nil }
