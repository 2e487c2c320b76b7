package cli

import (
	"github.com/urfave/cli/v2"

	"ganeti-node/daemon"
)

// renewCryptoCmd is `cluster renew-crypto`: it renews node
// certificates, the cluster CA and SSH keys, in any combination, on
// the master, and shows each node's progress.
func renewCryptoCmd() *cli.Command {
	return &cli.Command{Name: "renew-crypto",
		Usage: "renew certificates, the cluster CA and SSH keys on every node",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "new-node-certificates",
				Usage: "new server and client certificates for every node " +
					"(also repairs an inconsistent candidate map)"},
			&cli.BoolFlag{Name: "new-cluster-certificate",
				Usage: "a new cluster CA, and every node's certificates under it"},
			&cli.BoolFlag{Name: "new-ssh-keys",
				Usage: "a new SSH key pair on every node (old ones backed up)"},
			&cli.StringFlag{Name: "ssh-key-type",
				Usage: "type of the new SSH keys: ed25519, ecdsa or rsa " +
					"(default: the cluster's)"},
			&cli.IntFlag{Name: "ssh-key-bits",
				Usage: "size of the new SSH keys (default: the type's)"},
			&cli.BoolFlag{Name: "enable-ssh-management",
				Usage: "switch SSH management on; with --new-ssh-keys, " +
					"move a shared-key cluster to per-node keys"},
			&cli.BoolFlag{Name: "force",
				Usage: "renew the reachable nodes and list the others " +
					"instead of refusing"},
		},
		Action: func(c *cli.Context) error {
			return runOp(c, daemon.OpRenewCrypto, daemon.RenewArgs{
				NewNodeCertificates:   c.Bool("new-node-certificates"),
				NewClusterCertificate: c.Bool("new-cluster-certificate"),
				NewSSHKeys:            c.Bool("new-ssh-keys"),
				SSHKeyType:            c.String("ssh-key-type"),
				SSHKeyBits:            c.Int("ssh-key-bits"),
				EnableSSHManagement:   c.Bool("enable-ssh-management"),
				Force:                 c.Bool("force"),
			})
		}}
}
