package cli

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// clusterVerifyCmd is `cluster verify`.
// TODO: issue 5; until then the command says so.
func clusterVerifyCmd() *cli.Command {
	return &cli.Command{Name: "verify", Usage: "check the cluster's security boundary",
		Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			return errors.New("cluster verify is not implemented yet")
		}}
}
