/* main.c — the crucible command line: parses arguments, calls the library. */
#include <stdio.h>
#include <string.h>

#include "base.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        printf("crucible %s\n", CR_VERSION_STRING);
        return 0;
    }
    fprintf(stderr, "crucible: no command implemented yet\n");
    return 2;
}
