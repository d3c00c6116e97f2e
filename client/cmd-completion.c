/*
 * `emberctl completion bash`: prints the bash completion script, the same
 * bytes as packaging/completion/emberctl.bash (embedded at build time, see
 * client/CMakeLists.txt). The script asks emberctl itself for its commands
 * and emberd for VM names, so it needs no regeneration when verbs change.
 */
#include <stdio.h>

#include "emberctl.h"
#include "completion-bash.h"

int
cmd_completion_bash(struct ctl *ctl, struct verb_args *a)
{
	if (fwrite(completion_bash, 1, sizeof(completion_bash), stdout) !=
	    sizeof(completion_bash)) {
		ctl_warnx("cannot write the completion script");
		return EXIT_ERROR;
	}
	return EXIT_OK;
}
