/* log: a message that quotes a client's bytes stays one harmless line. */
#include "log.h"
#include "unit.h"

#include <stdio.h>
#include <unistd.h>

TEST(log_neutralise_control_bytes)
{
	char msg[] = "resuming after 1-0\r\n2026 ERROR forged\t\x1b[2J\x7f"
		     "\x01 \xc3\xbc";

	log_neutralise(msg);
	CHECK_STR(msg, "resuming after 1-0  2026 ERROR forged ?[2J?? \xc3\xbc");
}

TEST(log_neutralise_c1_controls_in_utf8)
{
	/* U+009B (CSI) and U+0085 (NEL) in UTF-8; U+00A0 and U+00FC stay */
	char msg[] = "a\xc2\x9b" "2Jb\xc2\x85" "c\xc2\xa0\xc3\xbc";

	log_neutralise(msg);
	CHECK_STR(msg, "a??2Jb??c\xc2\xa0\xc3\xbc");
}

TEST(log_write_is_one_line)
{
	FILE *tmp = tmpfile();
	char out[256] = "";
	int saved;
	size_t len;

	REQUIRE(tmp != NULL);
	fflush(stderr);
	saved = dup(2);
	REQUIRE(saved >= 0);
	REQUIRE(dup2(fileno(tmp), 2) == 2);
	log_write(LOG_LVL_WARN, "stream operator=%s: since %s", "ops",
		  "1-0\nFAKE line");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	len = fread(out, 1, sizeof(out) - 1, tmp);
	fclose(tmp);
	out[len] = '\0';
	CHECK(strstr(out, "since 1-0 FAKE line\n") != NULL);
	/* The only line break is the one that ends the line. */
	CHECK(strchr(out, '\n') == out + len - 1);
}
