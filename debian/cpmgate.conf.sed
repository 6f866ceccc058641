# debian/cpmgate.conf.sed — turns deploy/cpmgate.conf into the packaged
# /etc/cpmgate/cpmgate.conf: databases in /var/lib/cpmgate; certificates
# and keys stay relative (in /etc/cpmgate, where postinst makes a
# self-signed server certificate and the audit key); the site-specific
# trust material (client CA, CRL, SAML IdP, Dovecot master password) is
# commented out, with the methods that need it, until the operator adds it.
s#^\(policy_db\|audit_db\|content_db\) = \([a-z]*\.db\)#\1 = /var/lib/cpmgate/\2#
s#^\(client_ca\|crl\) = #; \1 = #
s#^auth = cert, psk, login       #auth = psk, login             #
s#^auth = cert, psk, digest, saml#auth = psk, digest#
s#^imap_login = master #imap_login = passthrough#
s#^\(master_user\|master_password_file\) = #; \1 = #
/^\[saml\]/,$s#^\([^;#]\)#; \1#
1i # /etc/cpmgate/cpmgate.conf as packaged: the sample below with databases in\n# /var/lib/cpmgate and the client CA, CRL, SAML and Dovecot master login\n# commented out until they are configured (see cpmgate.conf(5)).\n#
