package cli

import (
	"fmt"
	"io"
	"net/http"

	"github.com/urfave/cli/v2"

	"ganeti-node/verify"
)

// clusterVerifyCmd is `cluster verify`: it asks the local daemon, which
// runs the verify on the master (a candidate forwards it, a normal node
// refuses), and exits non-zero when an error was found.
func clusterVerifyCmd() *cli.Command {
	return &cli.Command{Name: "verify",
		Usage: "check that the cluster's security boundary holds",
		Description: "Reports errors and warnings with stable codes " +
			"(listed in the README); exits 1 when there is an error.",
		Flags:  []cli.Flag{outputFlag},
		Action: clusterVerify}
}

func clusterVerify(c *cli.Context) error {
	if err := checkOutput(c); err != nil {
		return err
	}
	var res verify.Result
	if err := local(c).call(http.MethodPost, "/v1/verify", nil,
		&res); err != nil {
		return err
	}
	if res.Errors == nil {
		res.Errors = []verify.Finding{}
	}
	if res.Warnings == nil {
		res.Warnings = []verify.Finding{}
	}
	if c.String("output") == "json" {
		if err := printJSON(c, res); err != nil {
			return err
		}
	} else {
		printVerify(c.App.Writer, &res)
	}
	if !res.OK() {
		return fmt.Errorf("cluster verify found %s and %s",
			plural(len(res.Errors), "error"),
			plural(len(res.Warnings), "warning"))
	}
	return nil
}

// printVerify writes one line per finding, errors first, then a
// summary line.
func printVerify(w io.Writer, res *verify.Result) {
	for _, f := range res.Errors {
		fmt.Fprintf(w, "ERROR   %s %s: %s\n", f.Node, f.Code, f.Message)
	}
	for _, f := range res.Warnings {
		fmt.Fprintf(w, "WARNING %s %s: %s\n", f.Node, f.Code, f.Message)
	}
	fmt.Fprintf(w, "cluster verify: %s, %s\n",
		plural(len(res.Errors), "error"), plural(len(res.Warnings), "warning"))
}

// plural renders "no errors", "1 error", "2 errors".
func plural(n int, what string) string {
	switch n {
	case 0:
		return "no " + what + "s"
	case 1:
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
