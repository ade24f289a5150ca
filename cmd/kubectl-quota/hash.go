package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// hashCommand prints a subject's hash under the install's subject key:
// what a UsageQuota override's subjectHash takes, so the raw identity (an
// API key) stays out of Git.
func hashCommand(c clients, stdout io.Writer) *cobra.Command {
	var s subjectFlags
	cmd := &cobra.Command{
		Use:   "hash (VALUE | -)",
		Short: "Print a subject's hash, for an override's subjectHash (the raw value stays out of Git)",
		Example: `  # the value from standard input, so it stays out of the shell's history too
  printf %s "$PARTNER_KEY" | kubectl quota hash - -n team-a
  kubectl quota hash acme --subject-key-file ./subject-key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := hashInput(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			cl, ns, err := c.kube()
			if err != nil && s.keyFile == "" {
				return err
			}
			if err := s.useKey(cmd.Context(), cl, ns); err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, limiter.SubjectHash([]string{value}))
			return err
		},
	}
	cmd.Flags().StringVar(&s.keyFile, "subject-key-file", os.Getenv("QUOTA_SUBJECT_KEY_FILE"), "file holding the install's subject key (default: read from the namespace's Secret "+storeSecret+")")
	return cmd
}

// hashInput is the value to hash: the argument, or with "-" the first
// line of stdin.
func hashInput(arg string, stdin io.Reader) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no value on standard input")
	}
	return line, nil
}
