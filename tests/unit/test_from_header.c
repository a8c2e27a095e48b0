/*
 * test_from_header.c - unit tests of the author's address from the From
 * field (filters/from_header.c): one field's value, the field among a
 * parsed message's fields, and among a header block's lines, as DMARC
 * and the DKIM signer read them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "from_header.h"
#include "msg_spool.h"
#include "unit.h"

static struct moat_from f;

static enum moat_from_status from(const char *v)
{
	return moat_from_value(v, strlen(v), &f);
}

static int is(const char *local, const char *domain)
{
	return strcmp(f.local, local) == 0 && strcmp(f.domain, domain) == 0;
}

TEST(from_values)
{
	CHECK(from(" Alice <alice@Example.ORG>") == MOAT_FROM_OK && is("alice", "example.org"));
	CHECK(from(" alice@example.org") == MOAT_FROM_OK && is("alice", "example.org"));
	CHECK(from(" \"Bob, <bob@evil.example>\" <bob@example.net>") == MOAT_FROM_OK &&
	      is("bob", "example.net"));
	CHECK(from(" (comment, a@evil.example) carol@example.com") == MOAT_FROM_OK &&
	      is("carol", "example.com"));
	CHECK(from(" Dave\r\n <dave@mail.example.org.>") == MOAT_FROM_OK &&
	      is("dave", "mail.example.org"));
	CHECK(from(" <@relay.example,@r2.example:eve@example.org>") == MOAT_FROM_OK &&
	      is("eve", "example.org"));
	CHECK(from(" team: frank@example.org;") == MOAT_FROM_OK && is("frank", "example.org"));
	CHECK(from(" =?utf-8?q?J=C3=B6rg?= <joerg@b\xc3\xbc" "cher.example>") == MOAT_FROM_OK &&
	      is("joerg", "xn--bcher-kva.example"));
	CHECK(from(" a@example.org, b@example.net") == MOAT_FROM_SEVERAL_ADDRESSES);
	CHECK(from(" a@example.org, a@example.org") == MOAT_FROM_SEVERAL_ADDRESSES);
	CHECK(from(" team: a@example.org, b@example.org;") == MOAT_FROM_SEVERAL_ADDRESSES);
	CHECK(from(" undisclosed-recipients:;") == MOAT_FROM_NO_ADDRESS);
	CHECK(from(" ") == MOAT_FROM_NO_ADDRESS);
	CHECK(from(" Alice <alice>") == MOAT_FROM_NO_DOMAIN);
	CHECK(from(" alice@") == MOAT_FROM_NO_DOMAIN);
	CHECK(from(" alice@[192.0.2.1]") == MOAT_FROM_BAD_DOMAIN);
	CHECK(from(" alice@localhost") == MOAT_FROM_BAD_DOMAIN);
	CHECK(from(" alice@exa mple.org") == MOAT_FROM_BAD_DOMAIN);
	{
		/* a comment pushing the domain past what is read: no prefix
		 * ("x@paypal.co") may stand for the address */
		static char v[4200];
		memset(v, 0, sizeof(v));
		v[0] = ' ';
		v[1] = '(';
		memset(v + 2, 'c', 4082);
		strcat(v, ") x@paypal.com");
		CHECK(from(v) == MOAT_FROM_TOO_LONG);
	}
	CHECK(f.domain[0] == '\0' && f.local[0] == '\0');
}

/* The local part is for lookups: given only when it is a plain one. */
TEST(from_local_parts)
{
	char v[200];
	CHECK(from(" <Alice.Smith+tag@example.org>") == MOAT_FROM_OK &&
	      is("alice.smith+tag", "example.org"));
	CHECK(from(" j\xc3\xb6rg@example.org") == MOAT_FROM_OK &&
	      is("j\xc3\xb6rg", "example.org"));
	CHECK(from(" \"john doe\"@example.org") == MOAT_FROM_OK && is("", "example.org"));
	CHECK(from(" John <john (work) @example.org>") == MOAT_FROM_OK && is("", "example.org"));
	CHECK(from(" <@example.org>") == MOAT_FROM_OK && is("", "example.org"));
	v[0] = ' ';
	memset(v + 1, 'a', 65);
	strcpy(v + 66, "@example.org");
	CHECK(from(v) == MOAT_FROM_OK && is("", "example.org"));	/* 65 octets */
	CHECK(from(v + 1) == MOAT_FROM_OK && is("", "example.org"));
	CHECK(from(v + 2) == MOAT_FROM_OK && strlen(f.local) == 64);
}

static enum moat_from_status from_msg(const char *text)
{
	struct msg_spool *sp = msg_spool_new("/tmp", 1 << 20);
	struct moat_message m;
	enum moat_from_status st = MOAT_FROM_BAD_DOMAIN;
	if (!sp)
		return st;
	if (msg_spool_write(sp, text, strlen(text)) == 0 &&
	    moat_message_parse(&m, sp, 1 << 20) == 0) {
		st = moat_from_message(&m, &f);
		moat_message_free(&m);
	}
	msg_spool_free(sp);
	return st;
}

TEST(from_fields)
{
	CHECK(from_msg("From: <a@example.org>\r\nTo: b@example.net\r\n\r\nbody\r\n") ==
	      MOAT_FROM_OK && is("a", "example.org"));
	CHECK(from_msg("To: b@example.net\r\n\r\nbody\r\n") == MOAT_FROM_MISSING);
	CHECK(from_msg("From: <a@example.org>\r\nfrom: <c@example.com>\r\n\r\nbody\r\n") ==
	      MOAT_FROM_SEVERAL_FIELDS);
	CHECK(strstr(moat_from_problem(MOAT_FROM_SEVERAL_FIELDS), "more than one From"));
	CHECK(moat_from_message(NULL, &f) == MOAT_FROM_MISSING);
}

static enum moat_from_status from_block(const char *head)
{
	return moat_from_block(head, strlen(head), &f);
}

/* A header block finds the same field a parsed message does. */
TEST(from_blocks)
{
	CHECK(from_block("To: b@example.net\r\nFrom: Alice <Alice@Example.org>\r\n\r\n") ==
	      MOAT_FROM_OK && is("alice", "example.org"));
	CHECK(from_block("FROM:a@example.org\r\nSubject: x\r\n") == MOAT_FROM_OK &&
	      is("a", "example.org"));
	CHECK(from_block("From : a@example.org\r\n\r\n") == MOAT_FROM_OK && is("a", "example.org"));
	CHECK(from_block("From: Alice\r\n <alice@example.org>\r\n\r\n") == MOAT_FROM_OK &&
	      is("alice", "example.org"));
	CHECK(from_block("From: a@example.org\nTo: b@example.net\n\n") == MOAT_FROM_OK &&
	      is("a", "example.org"));
	CHECK(from_block("From: a@example.org") == MOAT_FROM_OK && is("a", "example.org"));
	CHECK(from_block("To: b@example.net\r\n\r\nFrom: a@example.org\r\n") == MOAT_FROM_MISSING);
	CHECK(from_block("X-From: a@example.org\r\nFromage: b@example.org\r\n") ==
	      MOAT_FROM_MISSING);
	CHECK(from_block("To: x\r\n From: a@example.org\r\n") == MOAT_FROM_MISSING);
	CHECK(from_block("") == MOAT_FROM_MISSING);
	CHECK(from_block("From: a@example.org\r\nfrom: b@example.org\r\n") ==
	      MOAT_FROM_SEVERAL_FIELDS && f.domain[0] == '\0');
	CHECK(from_block("From: a@example.org, b@example.org\r\n") ==
	      MOAT_FROM_SEVERAL_ADDRESSES);
	CHECK(from_block("From: root@myhost\r\n") == MOAT_FROM_BAD_DOMAIN);
}

int main(void)
{
	RUN(from_values);
	RUN(from_local_parts);
	RUN(from_fields);
	RUN(from_blocks);
	return unit_done();
}
